// Package telemetry sets up OpenTelemetry for one imkube process: a
// MeterProvider exported to Prometheus (served by Handler at /metrics) and,
// when an OTLP endpoint is configured, over OTLP/HTTP; a TracerProvider
// (exported over OTLP/HTTP when configured); and W3C trace-context
// propagation through bus message headers.
//
// The typed instrument sets (Gateway, Message, Sequence, Flow, Operator) hold
// the metrics the dashboards in charts/imkube/dashboards query. Their exported
// Prometheus names are part of the dashboards' contract: do not rename them.
// Every method of an instrument set is safe on a nil receiver, so tests and
// optional wiring can pass nil.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// EnvOTLPEndpoint names the environment variable holding the OTLP/HTTP
// endpoint (for example http://otel-collector:4318); empty disables OTLP.
const EnvOTLPEndpoint = "IMKUBE_OTLP_ENDPOINT"

// DefaultOTLPInterval is how often metrics are pushed over OTLP.
const DefaultOTLPInterval = 15 * time.Second

// Config describes one process. Only ServiceName is required.
type Config struct {
	// ServiceName is the OpenTelemetry service.name, e.g. "imkube-gateway".
	ServiceName string
	// ServiceVersion is service.version (the build version).
	ServiceVersion string
	// InstanceID is service.instance.id, e.g. the pod name; empty leaves it out.
	InstanceID string
	// OTLPEndpoint is the OTLP/HTTP base URL ("http://collector:4318" or
	// "collector:4318", which means plain HTTP); /v1/traces and /v1/metrics
	// are appended. Empty: no OTLP export, traces are created but not exported.
	OTLPEndpoint string
	// OTLPInterval is the OTLP metric push interval; zero means DefaultOTLPInterval.
	OTLPInterval time.Duration
	// Registerer and Gatherer, when both set, replace the private Prometheus
	// registry (the operator passes controller-runtime's metrics.Registry so
	// its metrics server serves imkube metrics too). When nil, New creates a
	// private registry with the Go and process collectors.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger receives /metrics scrape errors (and export errors after
	// SetGlobal); nil discards them.
	Logger *slog.Logger
}

// FromEnv fills the settings that come from the service runtime contract's
// environment (IMKUBE_OTLP_ENDPOINT); getenv is usually os.Getenv.
func (c Config) FromEnv(getenv func(string) string) Config {
	if v := getenv(EnvOTLPEndpoint); v != "" {
		c.OTLPEndpoint = v
	}
	return c
}

// Telemetry owns a process's meter and tracer providers. The zero value and a
// nil *Telemetry are usable and record nothing.
type Telemetry struct {
	meters     *sdkmetric.MeterProvider
	tracers    *sdktrace.TracerProvider
	gatherer   prometheus.Gatherer
	registerer prometheus.Registerer
	handler    http.Handler
	log        *slog.Logger
}

// New builds the providers. Call Shutdown to flush and stop the exporters.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("telemetry: Config.ServiceName is empty")
	}
	if (cfg.Registerer == nil) != (cfg.Gatherer == nil) {
		return nil, errors.New("telemetry: set both Config.Registerer and Config.Gatherer, or neither")
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}

	reg, gat := cfg.Registerer, cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		if err := r.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("telemetry: register go collector: %w", err)
		}
		if err := r.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("telemetry: register process collector: %w", err)
		}
		reg, gat = r, r
	}
	promExporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	meterOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	traceOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}

	if cfg.OTLPEndpoint != "" {
		base, err := parseEndpoint(cfg.OTLPEndpoint)
		if err != nil {
			return nil, err
		}
		metricExp, err := otlpmetrichttp.New(ctx, otlpMetricOptions(base)...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP metric exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		interval := cmp.Or(cfg.OTLPInterval, DefaultOTLPInterval)
		meterOpts = append(meterOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp, sdkmetric.WithInterval(interval))))
		traceExp, err := otlptracehttp.New(ctx, otlpTraceOptions(base)...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(traceExp))
	}

	t := &Telemetry{
		meters:     sdkmetric.NewMeterProvider(meterOpts...),
		tracers:    sdktrace.NewTracerProvider(traceOpts...),
		gatherer:   gat,
		registerer: reg,
		log:        cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
	}
	t.handler = promhttp.HandlerFor(gat, promhttp.HandlerOpts{
		ErrorLog:      promLogger{log: t.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return t, nil
}

// MeterProvider returns the provider the instrument sets are built from; a
// no-op provider for a nil Telemetry.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil || t.meters == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.meters
}

// TracerProvider returns the process's tracer provider; a no-op provider for a
// nil Telemetry.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil || t.tracers == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tracers
}

// Tracer is shorthand for TracerProvider().Tracer(name).
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider().Tracer(name) }

// Registerer is the Prometheus registry /metrics serves, for extra collectors.
func (t *Telemetry) Registerer() prometheus.Registerer {
	if t == nil || t.registerer == nil {
		return prometheus.NewRegistry()
	}
	return t.registerer
}

// Handler serves the Prometheus exposition for /metrics.
func (t *Telemetry) Handler() http.Handler {
	if t == nil || t.handler == nil {
		return promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	}
	return t.handler
}

// SetGlobal installs the providers, Propagator and an error handler logging to
// Config.Logger as the OpenTelemetry globals, for libraries that use them by
// default (otelhttp, otelgrpc). Call it once from main, never from a library.
func (t *Telemetry) SetGlobal() {
	otel.SetTracerProvider(t.TracerProvider())
	otel.SetMeterProvider(t.MeterProvider())
	otel.SetTextMapPropagator(Propagator())
	if t != nil && t.log != nil {
		log := t.log
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "error", err) }))
	}
}

// Shutdown flushes pending spans and metrics to OTLP and stops the exporters.
// It is bounded by ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tracers != nil {
		if err := t.tracers.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down tracer provider: %w", err))
		}
	}
	if t.meters != nil {
		if err := t.meters.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down meter provider: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Propagator is the W3C trace-context + baggage propagator imkube uses on
// HTTP calls between services and in bus message headers.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Inject writes ctx's trace context (traceparent, tracestate, baggage) into
// header, allocating it when nil, and returns it: m.Header = telemetry.Inject(ctx, m.Header).
func Inject(ctx context.Context, header map[string]string) map[string]string {
	if header == nil {
		header = make(map[string]string, 2)
	}
	Propagator().Inject(ctx, propagation.MapCarrier(header))
	return header
}

// Extract returns ctx carrying the remote span context found in header (a bus
// Message.Header); start the consumer span from the returned context.
func Extract(ctx context.Context, header map[string]string) context.Context {
	if len(header) == 0 {
		return ctx
	}
	return Propagator().Extract(ctx, propagation.MapCarrier(header))
}

func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.ServiceName)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	if cfg.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", cfg.InstanceID))
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// parseEndpoint accepts "http(s)://host:port[/base]" or "host:port" (plain HTTP).
func parseEndpoint(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s %q: %w", EnvOTLPEndpoint, s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("telemetry: %s %q: want http://host:port or https://host:port", EnvOTLPEndpoint, s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func otlpTraceOptions(base *url.URL) []otlptracehttp.Option {
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(base.Host), otlptracehttp.WithURLPath(base.Path + "/v1/traces")}
	if base.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	return opts
}

func otlpMetricOptions(base *url.URL) []otlpmetrichttp.Option {
	opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(base.Host), otlpmetrichttp.WithURLPath(base.Path + "/v1/metrics")}
	if base.Scheme == "http" {
		opts = append(opts, otlpmetrichttp.WithInsecure())
	}
	return opts
}

// promLogger adapts slog to promhttp's error logger.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics scrape", "error", fmt.Sprint(v...)) }

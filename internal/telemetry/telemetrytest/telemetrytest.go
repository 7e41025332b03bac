// Package telemetrytest gives tests the metric names imkube really exports:
// it builds every instrument set of package telemetry, records one value with
// every method (found by reflection, so a new method is covered without
// editing this file), scrapes /metrics and parses the exposition.
package telemetrytest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/metric"

	"github.com/imkube/imkube/internal/telemetry"
)

// Sets builds every instrument set on mp, in a fixed order. Add a new set
// here and every test using Families covers it.
func Sets(mp metric.MeterProvider) ([]any, error) {
	g, err := telemetry.NewGateway(mp)
	if err != nil {
		return nil, err
	}
	m, err := telemetry.NewMessage(mp)
	if err != nil {
		return nil, err
	}
	s, err := telemetry.NewSequence(mp)
	if err != nil {
		return nil, err
	}
	f, err := telemetry.NewFlow(mp)
	if err != nil {
		return nil, err
	}
	o, err := telemetry.NewOperator(mp)
	if err != nil {
		return nil, err
	}
	w, err := telemetry.NewWebhooks(mp)
	if err != nil {
		return nil, err
	}
	h, err := telemetry.NewHealth(mp)
	if err != nil {
		return nil, err
	}
	return []any{g, m, s, f, o, w, h}, nil
}

// Exercise calls every exported method of set once with placeholder
// arguments (strings "test", numbers 1, booleans true, durations 1ms, times now).
func Exercise(set any) error {
	v := reflect.ValueOf(set)
	for i := range v.NumMethod() {
		mt := v.Type().Method(i)
		fn := v.Method(i)
		args := make([]reflect.Value, fn.Type().NumIn())
		for j := range args {
			in := fn.Type().In(j)
			switch {
			case in == reflect.TypeFor[time.Duration]():
				args[j] = reflect.ValueOf(time.Millisecond)
			case in == reflect.TypeFor[time.Time]():
				args[j] = reflect.ValueOf(time.Now())
			case in == reflect.TypeFor[context.Context]():
				args[j] = reflect.ValueOf(context.Background())
			case in.Kind() == reflect.Bool:
				args[j] = reflect.ValueOf(true).Convert(in)
			case in.Kind() == reflect.String:
				args[j] = reflect.ValueOf("test").Convert(in)
			case in.Kind() >= reflect.Int && in.Kind() <= reflect.Float64:
				args[j] = reflect.ValueOf(1).Convert(in)
			default:
				return fmt.Errorf("telemetrytest: %T.%s: no placeholder for a %s argument", set, mt.Name, in)
			}
		}
		fn.Call(args)
	}
	return nil
}

// Families returns the metric families /metrics serves after every method of
// every instrument set has been called once, keyed by family name.
func Families(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	tel, err := telemetry.New(t.Context(), telemetry.Config{ServiceName: "imkube-test"})
	if err != nil {
		t.Fatalf("telemetry.New: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	sets, err := Sets(tel.MeterProvider())
	if err != nil {
		t.Fatalf("build instrument sets: %v", err)
	}
	for _, s := range sets {
		if err := Exercise(s); err != nil {
			t.Fatal(err)
		}
	}
	fams, err := Scrape(tel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// Scrape GETs /metrics from h and parses the text exposition.
func Scrape(h http.Handler) (map[string]*dto.MetricFamily, error) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("telemetrytest: /metrics answered %d: %s", rec.Code, rec.Body)
	}
	return Parse(rec.Body)
}

// Parse parses a Prometheus text exposition (a /metrics response body).
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("telemetrytest: parse /metrics: %w", err)
	}
	return fams, nil
}

// SeriesNames expands families into the series names PromQL can select: a
// histogram or summary family adds its _bucket/_sum/_count (and quantile)
// series names.
func SeriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := make(map[string]bool, len(fams)*2)
	for name, f := range fams {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"] = true
			names[name+"_sum"] = true
			names[name+"_count"] = true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"] = true
			names[name+"_count"] = true
		}
	}
	return names
}

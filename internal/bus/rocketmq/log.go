package rocketmq

import (
	"context"
	"log/slog"

	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// RouteClientLogs sends the RocketMQ client's own logging (process-wide in
// the client library, by default chatty on stdout) to l, dropping records
// below minLevel. Call it once from main, before New.
func RouteClientLogs(l *slog.Logger, minLevel slog.Level) {
	rlog.SetLogger(&clientLogger{l: l.With("component", "rocketmq-client"), min: minLevel})
}

type clientLogger struct {
	l   *slog.Logger
	min slog.Level
}

func (c *clientLogger) log(level slog.Level, msg string, fields map[string]interface{}) {
	if level < c.min || !c.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(fields))
	for k, v := range fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	c.l.LogAttrs(context.Background(), level, msg, attrs...)
}

func (c *clientLogger) Debug(msg string, fields map[string]interface{}) {
	c.log(slog.LevelDebug, msg, fields)
}
func (c *clientLogger) Info(msg string, fields map[string]interface{}) {
	c.log(slog.LevelInfo, msg, fields)
}
func (c *clientLogger) Warning(msg string, fields map[string]interface{}) {
	c.log(slog.LevelWarn, msg, fields)
}
func (c *clientLogger) Error(msg string, fields map[string]interface{}) {
	c.log(slog.LevelError, msg, fields)
}
func (c *clientLogger) Fatal(msg string, fields map[string]interface{}) {
	c.log(slog.LevelError, msg, fields)
}
func (c *clientLogger) Level(string)            {}
func (c *clientLogger) OutputPath(string) error { return nil }

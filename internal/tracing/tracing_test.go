package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// otelVars are the variables Setup reads; each test sets them all, so
// that none comes from the environment the tests run in.
var otelVars = []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}

func setenv(t *testing.T, kv ...string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestSetupIsOffUnlessAnExporterIsNamed(t *testing.T) {
	for _, env := range [][]string{
		{},
		{"OTEL_TRACES_EXPORTER", "none"},
		{"OTEL_TRACES_EXPORTER", " none , "},
		{"OTEL_TRACES_EXPORTER", "console", "OTEL_SDK_DISABLED", "true"},
	} {
		setenv(t, env...)
		tr, err := Setup(context.Background(), Config{Logger: quiet()})
		if err != nil {
			t.Fatalf("%v: %v", env, err)
		}
		if tr.Provider() != nil {
			t.Errorf("%v: tracing is on", env)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%v: shutdown: %v", env, err)
		}
	}
}

// TestSetupConsole: the console exporter writes the spans, flushed by
// Shutdown, with the resource the variables describe.
func TestSetupConsole(t *testing.T) {
	setenv(t, "OTEL_TRACES_EXPORTER", "console", "OTEL_SERVICE_NAME", "hookstream-test",
		"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	var out bytes.Buffer
	tr, err := Setup(context.Background(), Config{Console: &out, Instance: "node-1", Version: "v9", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider().Tracer(TracerName).Start(context.Background(), "check")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Name     string
		Resource []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("console output %q: %v", out.String(), err)
	}
	res := map[string]any{}
	for _, kv := range got.Resource {
		res[kv.Key] = kv.Value.Value
	}
	if got.Name != "check" || res["service.name"] != "hookstream-test" || res["deployment.environment.name"] != "test" ||
		res["service.instance.id"] != "node-1" || res["service.version"] != "v9" {
		t.Errorf("span %q, resource %v", got.Name, res)
	}
	if _, ok := res["process.command_args"]; ok {
		t.Error("the resource has the command line, which may hold a secret")
	}
}

func TestSetupDefaultsToServiceNameHookstream(t *testing.T) {
	setenv(t, "OTEL_TRACES_EXPORTER", "console")
	var out bytes.Buffer
	tr, err := Setup(context.Background(), Config{Console: &out, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider().Tracer(TracerName).Start(context.Background(), "x")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"Key":"service.name","Value":{"Type":"STRING","Value":"hookstream"}`) {
		t.Errorf("console output %s", out.String())
	}
}

// TestSetupReadsTheSampler: the SDK's sampler variables apply.
func TestSetupReadsTheSampler(t *testing.T) {
	for sampler, sampled := range map[string]bool{"always_off": false, "always_on": true, "parentbased_traceidratio": false} {
		setenv(t, "OTEL_TRACES_EXPORTER", "console", "OTEL_TRACES_SAMPLER", sampler, "OTEL_TRACES_SAMPLER_ARG", "0")
		tr, err := Setup(context.Background(), Config{Console: &bytes.Buffer{}, Logger: quiet()})
		if err != nil {
			t.Fatalf("%s: %v", sampler, err)
		}
		_, span := tr.Provider().Tracer(TracerName).Start(context.Background(), "x")
		if got := span.SpanContext().IsSampled(); got != sampled {
			t.Errorf("%s: sampled %v, want %v", sampler, got, sampled)
		}
		span.End()
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSetupRefusesWhatItCannotUse: a bad value fails the start, naming
// its variable, instead of the SDK's fallback (a sampler argument it
// cannot read samples everything).
func TestSetupRefusesWhatItCannotUse(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"OTEL_TRACES_EXPORTER", "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{[]string{"OTEL_TRACES_EXPORTER", "console,jaeger"}, "OTEL_TRACES_EXPORTER"},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{[]string{"OTEL_TRACES_EXPORTER", "console", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "1%"}, "OTEL_TRACES_SAMPLER"},
		{[]string{"OTEL_TRACES_EXPORTER", "console", "OTEL_TRACES_SAMPLER", "sometimes"}, "OTEL_TRACES_SAMPLER"},
		{[]string{"OTEL_TRACES_EXPORTER", "console", "OTEL_RESOURCE_ATTRIBUTES", "team"}, "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		setenv(t, c.env...)
		tr, err := Setup(context.Background(), Config{Console: &bytes.Buffer{}, Logger: quiet()})
		if err == nil {
			_ = tr.Shutdown(context.Background())
			t.Errorf("%v: no error", c.env)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %q does not name %s", c.env, err, c.want)
		}
	}
}

// TestSetupOTLP: both protocols build an exporter from the variables
// (nothing is sent: no span is made).
func TestSetupOTLP(t *testing.T) {
	for _, proto := range []string{"", "http/protobuf", "grpc"} {
		setenv(t, "OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", proto)
		tr, err := Setup(context.Background(), Config{Logger: quiet()})
		if err != nil {
			t.Fatalf("%q: %v", proto, err)
		}
		if tr.Provider() == nil {
			t.Errorf("%q: tracing is off", proto)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%q: shutdown: %v", proto, err)
		}
	}
}

func TestInjectExtract(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := Extract(context.Background(), tp, "vendor=abc")
	sc := trace.SpanContextFromContext(ctx)
	if TraceID(sc) != "4bf92f3577b34da6a3ce929d0e0e4736" || !sc.IsRemote() {
		t.Fatalf("extracted %+v", sc)
	}
	gotTP, gotTS := Inject(ctx)
	if gotTP != tp || gotTS != "vendor=abc" {
		t.Errorf("injected %q %q", gotTP, gotTS)
	}
	if sc := trace.SpanContextFromContext(Extract(context.Background(), "garbage", "vendor=abc")); sc.IsValid() {
		t.Errorf("garbage extracted as %+v", sc)
	}
	if tp, ts := Inject(context.Background()); tp != "" || ts != "" {
		t.Errorf("no span injected %q %q", tp, ts)
	}
}

func TestValidTraceparent(t *testing.T) {
	for s, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":      true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":      true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03":      true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-04":      false, // reserved flags in version 00
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what": true,  // a later version may add fields
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09x":     false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-":     false, // not in version 00 (the propagator lets it pass)
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":      false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":      false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01":      false,
		"":        false,
		"garbage": false,
	} {
		if got := ValidTraceparent(s); got != want {
			t.Errorf("ValidTraceparent(%q) = %v, want %v", s, got, want)
		}
		if got := trace.SpanContextFromContext(Extract(context.Background(), s, "")).IsValid(); got != want && !lenientV00(s) {
			t.Errorf("the propagator takes %q: %v, want %v", s, got, want)
		}
	}
}

// lenientV00 is the one traceparent the propagator takes and the W3C
// specification does not: version 00 followed by a dash and nothing.
func lenientV00(s string) bool {
	return len(s) == 56 && strings.HasPrefix(s, "00-") && strings.HasSuffix(s, "-") && ValidTraceparent(s[:55])
}

// FuzzValidTraceparent: the check used with tracing off accepts what the
// propagator used with tracing on accepts, but for lenientV00.
func FuzzValidTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-00")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	f.Fuzz(func(t *testing.T, s string) {
		want := trace.SpanContextFromContext(Extract(context.Background(), s, "")).IsValid()
		if got := ValidTraceparent(s); got != want && !lenientV00(s) {
			t.Errorf("ValidTraceparent(%q) = %v, the propagator says %v", s, got, want)
		}
	})
}

func TestPassableTracestate(t *testing.T) {
	for s, want := range map[string]bool{
		"":                       true,
		"vendor=abc,other=x y":   true,
		strings.Repeat("a", 512): true,
		strings.Repeat("a", 513): false,
		"vendor=abc\x01":         false,
		"vendor=caf\xc3\xa9":     false,
	} {
		if got := PassableTracestate(s); got != want {
			t.Errorf("PassableTracestate(%q) = %v, want %v", s, got, want)
		}
	}
}

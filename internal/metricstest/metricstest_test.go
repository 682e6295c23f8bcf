package metricstest

import "testing"

const page = `# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{source="a",status="202"} 3
requests_total{source="a",status="409"} 2
requests_total{source="b",status="202"} 5
requests_total_created{source="a"} 1.7e9
duration_seconds_count 7
duration_seconds_sum 0.25
`

func TestSum(t *testing.T) {
	for _, tc := range []struct {
		metric string
		labels []string
		want   float64
		found  bool
	}{
		{"requests_total", nil, 10, true},
		{"requests_total", []string{`source="a"`}, 5, true},
		{"requests_total", []string{`source="a"`, `status="202"`}, 3, true},
		{"requests_total", []string{`source="c"`}, 0, false},
		{"duration_seconds_count", nil, 7, true},
		{"duration_seconds", nil, 0, false}, // a prefix of other names only
		{"missing_total", nil, 0, false},
	} {
		got, found := Sum(t, page, tc.metric, tc.labels...)
		if got != tc.want || found != tc.found {
			t.Errorf("Sum(%s, %v) = %v, %v; want %v, %v", tc.metric, tc.labels, got, found, tc.want, tc.found)
		}
	}
}

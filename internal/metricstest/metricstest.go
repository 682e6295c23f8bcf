// Package metricstest reads metrics from a Prometheus text exposition (a
// /metrics page) in tests.
package metricstest

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Sum adds up the samples of metric in a Prometheus text exposition whose
// labels include every one of labels (each written `name="value"`), and
// says whether any sample matched. With no labels every sample of metric
// counts, labelled or not. A matching sample that does not parse fails
// the test.
func Sum(t testing.TB, exposition, metric string, labels ...string) (sum float64, found bool) {
	t.Helper()
	for line := range strings.Lines(exposition) {
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // another metric, or one whose name starts with metric's
		}
		set := ""
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				t.Fatalf("sample %q: no end to its labels", strings.TrimSpace(line))
			}
			set, rest = rest[1:end], rest[end+1:]
		}
		if !hasAll(set, labels) {
			continue
		}
		fields := strings.Fields(rest) // value [timestamp]
		if len(fields) == 0 {
			t.Fatalf("sample %q: no value", strings.TrimSpace(line))
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", strings.TrimSpace(line), err)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

func hasAll(set string, labels []string) bool {
	for _, l := range labels {
		if !strings.Contains(set, l) {
			return false
		}
	}
	return true
}

// Scrape gets url (a /metrics page) and returns Sum of what it serves.
func Scrape(t testing.TB, url, metric string, labels ...string) (sum float64, found bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum, found = Sum(t, string(body), metric, labels...)
	return sum, found
}

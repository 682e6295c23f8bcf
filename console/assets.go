package console

import (
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The front-end library, htmx, is copied from its npm package by
// web/build.sh (npm ci of web/package-lock.json), and the copy is
// committed: building and running hookstream needs no Node.js.
//go:generate sh web/build.sh

//go:embed static
var staticRoot embed.FS

//go:embed templates
var templateFS embed.FS

var staticFS = mustSub(staticRoot, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// pages are the templates, each with the layout; parsed once at start,
// so that a broken template fails the first test, not an operator.
var pages = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, page := range []string{"login", "error", "events", "event", "customers", "skip", "replay", "batch", "tail", "overview"} {
		out[page] = template.Must(template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.tmpl", "templates/"+page+".tmpl"))
	}
	return out
}()

var funcs = template.FuncMap{
	"eventURL": func(source, eventID string) string { return eventPath(Base+"/events", source, eventID) },
	"customerEventsURL": func(source, customer string) string {
		return Base + "/events?" + url.Values{"source": {source}, "customer_id": {customer}}.Encode()
	},
	"skipURL": func(source, customer string) string {
		return Base + "/customers/skip?" + url.Values{"source": {source}, "customer_id": {customer}}.Encode()
	},
	"time": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000") + " UTC"
	},
	"ago": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return humanDuration(time.Since(*t))
	},
	"until": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		d := time.Until(*t)
		if d <= 0 {
			return "due now"
		}
		return "in " + humanDuration(d)
	},
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return ""
		}
		return string(b)
	},
	"lower": strings.ToLower,
}

// humanDuration rounds d for a person: 42s, 5m, 3h 10m, 2d 4h.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Round(time.Minute)/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h " + strconv.Itoa(int(d%time.Hour/time.Minute)) + "m"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d " + strconv.Itoa(int(d%(24*time.Hour)/time.Hour)) + "h"
	}
}

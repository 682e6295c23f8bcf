// Package apidocs serves the OpenAPI document of hookstream's HTTP API
// (schemas/openapi.yaml) as GET /openapi.json, and a page rendering it as
// GET /docs. The page's script (Redoc, see assets/README.md) is embedded
// and served from /docs/assets/, so the page loads nothing from elsewhere.
package apidocs

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/schemas"
)

//go:embed assets/*.js
var assets embed.FS

// page renders /openapi.json. Its URLs are relative so that it also works
// behind a proxy that mounts hookstream under a path prefix.
const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hookstream API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script type="module" src="docs/assets/redoc.standalone.js"></script>
</body>
</html>
`

// document converts the embedded YAML once, on first use.
var document = sync.OnceValues(func() ([]byte, error) {
	return Convert(schemas.OpenAPI(), "openapi.yaml")
})

// JSON returns the OpenAPI document exactly as GET /openapi.json serves it.
func JSON() ([]byte, error) { return document() }

// Register adds GET /openapi.json, /docs and /docs/assets/:file to r. The
// document is converted here, once; it is part of the build, so a failure
// is a bug in it (which this package's tests catch) and panics.
func Register(r gin.IRouter) {
	doc, err := JSON()
	if err != nil {
		panic(fmt.Sprintf("apidocs: %v", err))
	}
	r.GET("/openapi.json", func(c *gin.Context) {
		c.Data(http.StatusOK, "application/json", doc)
	})
	r.GET("/docs", func(c *gin.Context) {
		c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(page))
	})
	r.GET("/docs/assets/:file", func(c *gin.Context) {
		name := c.Param("file")
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			c.JSON(http.StatusNotFound, ingest.ErrorBody{Error: ingest.ErrorDetail{Code: "not_found", Message: "no asset " + name}})
			return
		}
		// The name carries no version, so a browser keeps it only briefly.
		c.Header("Cache-Control", "public, max-age=3600")
		c.Data(http.StatusOK, contentType(name), b)
	})
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}

// Convert reads the YAML document name from fsys and returns it as JSON.
// A schema that is only {"$ref": "<relative file>"} is replaced by that
// file (a JSON Schema next to the document, such as
// json/audit-record.schema.json), without its "$schema" and "$id": the
// served document is then self-contained, and the inlined schema is not a
// separate resource whose relative references tools would resolve against
// its $id.
func Convert(fsys fs.FS, name string) ([]byte, error) {
	raw, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	doc, err = inline(fsys, path.Dir(name), doc, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return json.Marshal(doc)
}

// inline walks v, checking that every map has string keys (JSON has no
// other) and replacing references to files.
func inline(fsys fs.FS, dir string, v any, at string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok && !strings.HasPrefix(ref, "#") {
			if len(v) != 1 {
				return nil, fmt.Errorf("%s: a $ref to a file (%s) must stand alone", at, ref)
			}
			b, err := fs.ReadFile(fsys, path.Join(dir, ref))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			var schema map[string]any
			if err := json.Unmarshal(b, &schema); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", at, ref, err)
			}
			delete(schema, "$schema")
			delete(schema, "$id")
			return schema, nil
		}
		for k, e := range v {
			var err error
			if v[k], err = inline(fsys, dir, e, at+"/"+k); err != nil {
				return nil, err
			}
		}
		return v, nil
	case map[any]any:
		return nil, fmt.Errorf("%s: a key is not a string", at)
	case []any:
		for i, e := range v {
			var err error
			if v[i], err = inline(fsys, dir, e, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return nil, err
			}
		}
		return v, nil
	}
	return v, nil
}

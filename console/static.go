package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// asset is an embedded file with its ETag: browsers revalidate (a 304
// costs nothing) instead of keeping an old copy after an upgrade, since
// the paths carry no version.
type asset struct {
	body []byte
	etag string
}

var assets = func() map[string]asset {
	out := map[string]asset{}
	entries, err := fs.ReadDir(staticFS, ".")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(staticFS, e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}()

func serveStatic(c *gin.Context) {
	a, ok := assets[c.Param("file")]
	if !ok {
		c.Status(http.StatusNotFound)
		return
	}
	c.Header("ETag", a.etag)
	c.Header("Cache-Control", "no-cache")
	http.ServeContent(c.Writer, c.Request, c.Param("file"), time.Time{}, bytes.NewReader(a.body))
}

// Package schemas holds hookstream's contracts as data: the SQL migrations
// applied by `hookstream migrate`, the JSON Schemas of the built-in event
// payloads and of the audit record, and the OpenAPI document of the HTTP API.
//
// Everything is embedded, so the binary carries its own schema and a
// deployment never depends on files next to it.
package schemas

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed json/*.json openapi.yaml
var contracts embed.FS

// Migrations returns the goose-formatted SQL migrations, in apply order by
// file name.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}

// JSON returns the embedded JSON Schemas, by file name (for example
// "generic.schema.json", "audit-record.schema.json").
func JSON() fs.FS {
	sub, err := fs.Sub(contracts, "json")
	if err != nil {
		panic(err)
	}
	return sub
}

// OpenAPI returns the directory holding the OpenAPI document, "openapi.yaml",
// and the JSON Schemas it references by relative path ("json/…").
// internal/apidocs serves it as JSON with those references inlined.
func OpenAPI() fs.FS { return contracts }

// JSONSchemaURL is the $id prefix of hookstream's own schemas; a schema
// file named NAME has the $id JSONSchemaURL+NAME.
const JSONSchemaURL = "https://hookstream.dev/schemas/"

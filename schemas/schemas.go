// Package schemas holds hookstream's contracts as data: the SQL migrations
// applied by `hookstream migrate`, the JSON Schemas of the built-in event
// payloads and of the audit record, and (later) the OpenAPI document.
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

//go:embed json/*.json
var jsonSchemas embed.FS

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
	sub, err := fs.Sub(jsonSchemas, "json")
	if err != nil {
		panic(err)
	}
	return sub
}

// JSONSchemaURL is the $id prefix of hookstream's own schemas; a schema
// file named NAME has the $id JSONSchemaURL+NAME.
const JSONSchemaURL = "https://hookstream.dev/schemas/"

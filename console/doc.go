// Package console is the operator console: web pages under /console,
// served by serve and dev beside the admin API (on the admin listener
// when there is one) whenever an admin token is set.
//
// It owns the pages, their embedded assets (templates, a stylesheet, and
// htmx copied from npm by web/build.sh), the login and its sessions
// (session.go) and the CSRF check. It owns no data: every page is
// rendered from the admin API's answers and every action is an admin API
// call, made in-process through the admin API's own router with the
// operator's session named in the request (apiclient.go), so anything the
// console does, a script with the token can do, and the OpenAPI document
// describes every route it uses.
package console

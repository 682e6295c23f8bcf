// Package deploy has no code: its tests load the deployment files at the
// repository root (docker-compose.yml) the way Docker Compose does and
// check what operators rely on, so a broken edit fails CI instead of a
// `docker compose up`.
package deploy

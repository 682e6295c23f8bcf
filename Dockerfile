# syntax=docker/dockerfile:1
# Multi-stage build: a static hookstream binary on a distroless, non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hookstream ./cmd/hookstream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hookstream /usr/local/bin/hookstream
USER nonroot:nonroot
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/hookstream"]
CMD ["serve"]

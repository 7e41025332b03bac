# syntax=docker/dockerfile:1
# The imkube image: one static binary serving every subcommand
# (gateway | message | sequence | user | operator | dev | bench | version).
#
#   docker build -t ghcr.io/imkube/imkube:$(cat VERSION) --build-arg VERSION=$(cat VERSION) .
#
# The binary's version defaults to the VERSION file (also the chart's appVersion).
#
# Without Docker, `make image` builds the same image (same binary, entrypoint,
# user, platform) into bin/imkube-image.tar with crane; see hack/image.sh.
# The image runs as uid 65532 and needs nothing writable but /tmp, so it works
# with readOnlyRootFilesystem (the operator mounts an emptyDir at /tmp).

FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=
WORKDIR /src
COPY go.mod go.sum ./
COPY third_party ./third_party
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags "-s -w -X github.com/imkube/imkube/internal/buildinfo.Version=${VERSION:-$(cat VERSION)}" \
    -o /out/imkube ./cmd/imkube

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot (65532), /tmp; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=
LABEL org.opencontainers.image.title="imkube" \
      org.opencontainers.image.source="https://github.com/imkube/imkube" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/imkube /imkube
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/imkube"]

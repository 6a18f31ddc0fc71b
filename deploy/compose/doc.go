// Package compose holds the container test of docker-compose.yml, built
// only with the "compose" tag (make compose-test): it needs a Docker
// engine with compose, the image raftmail:dev and bin/raftmail-static
// (make image).
package compose

// Package function provides what Pulse knows about a function before it runs:
// its image. (The function spec, templates, static build and service spec
// join it later.)
//
// Image assembly (image.go) is pure: [Assemble] turns an [ImageSpec] — static
// binaries and the image configuration — into a docker-archive tar (the format
// of `docker save` and `docker load`) for a FROM scratch image with a single
// layer. The output is deterministic: the same spec gives byte-identical
// archives and therefore the same image ID, because Docker's image ID is the
// sha256 of the config JSON, which names the layer by the sha256 of its tar.
// Swarm can then reference the image by ID and never try to pull it.
//
// The Docker adapter (engine.go) is the only file that imports the Docker SDK:
// [LoadImage] sends an archive to an engine and checks that the engine holds
// the image under the ID computed at assembly.
package function

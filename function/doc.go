// Package function is everything Pulse knows about a function from its
// source to its Swarm service.
//
//   - The spec (spec.go, specfile.go, specrules.go): functions.yml parsed
//     with file:line:col errors ([LoadSpecs]); the service labels and the
//     watchdog environment it implies (labels.go).
//   - Templates (templates/, scaffold.go): `pulse new` ([Scaffold]).
//   - The static build (build*.go): [Build] compiles Go, C, C++ or takes a
//     static executable, with the watchdog from the SDK embedded in the
//     binary (package pulse), and assembles the image.
//   - Image assembly (image.go, pure): [Assemble] writes a deterministic
//     docker-archive for a FROM scratch image, so the same source gives the
//     same image ID and Swarm can reference it by ID with no registry.
//   - The service (service.go, pure): [ServiceSpec] — host-mode published
//     port, image by ID, read-only root, start-first rolling updates gated on
//     the watchdog's health.
//   - The Docker adapters (engine.go, swarm.go): [LoadImage] and [Swarm]
//     (deploy, scale, list, describe, logs, remove). They are the only files
//     that use the Docker client; scaling and waiting go through
//     internal/swarmscale, which pulsed's scaler shares.
//   - Readiness (readiness.go): [Swarm.WaitReady] over a pure decision from
//     the service, its tasks and pulsed's replica catalog ([CatalogClient]):
//     ready once Swarm runs the new spec and the gateway routes every replica,
//     failed with Swarm's reason when it pauses or rolls the update back.
package function

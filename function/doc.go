// Package function is everything Pulse knows about a function from its
// source to its Swarm service.
//
//   - The spec (spec.go; specfile.go reads the file, specfields.go one
//     function's fields, specrules.go checks them): functions.yml parsed
//     with file:line:col errors ([LoadSpecs]), each a [*SpecError] (joined;
//     errors.As finds them, through Build's errors too), so a caller tells
//     a bad spec from a usage error; the service labels and the watchdog
//     environment it implies (labels.go). Not here: the scale policy
//     ([Scale] is scalelabels.Policy: its defaults, rules and labels are
//     package internal/scalelabels), the rate_limit and async policies'
//     bounds and label values (contract.RateLimit, contract.AsyncPolicy,
//     which pulsed reads) and the defaults and ParseSize the spec shares
//     with the watchdog (package contract, defaults.go).
//   - Templates (templates/, scaffold.go): `pulse new` ([Scaffold]).
//   - The static build (build*.go): [Build] compiles Go, C, C++ or takes a
//     static executable, with the watchdog from the SDK embedded in the
//     binary (package pulse), and assembles the image.
//   - Image assembly (image.go, pure; imagevalidate.go checks an
//     [ImageSpec]): [Assemble] writes a deterministic docker-archive for a
//     FROM scratch image, so the same source gives the same image ID and
//     Swarm can reference it by ID with no registry.
//   - The service (service.go, pure): [ServiceSpec] — host-mode published
//     port, image by ID, read-only root, start-first rolling updates gated on
//     the watchdog's health, a memory and a pids limit on every replica
//     ([DefaultMemory] 256 MiB and [DefaultPids] 512 unless functions.yml's
//     limits say otherwise), and the install's replica credential mounted
//     at contract.ReplicaAuthPath so a replica serves only the gateway and
//     the collector.
//   - The gateway's CA (gatewayca.go): with DeployOptions.GatewayCA (an
//     https gateway URL; `pulse deploy` passes the CLI's ca_file) Deploy
//     keeps the PEM bundle in a Docker secret of the instance named by its
//     digest, mounts it at contract.GatewayCAPath and sets SSL_CERT_FILE,
//     so functions calling functions verify the gateway. Secrets of a
//     replaced CA are left (public certificates; docker secret rm).
//   - Image times: an image's creation time (and its files') is
//     SOURCE_DATE_EPOCH when set, else the newest modification time of the
//     function's source, never the build's time: the same files give the
//     same image ID.
//   - The Docker adapters: [LoadImage] (engine.go) and [Swarm], a file per
//     job: swarm.go (the type, its errors and what the jobs share: tasks,
//     nodes, endpoints), deploy.go, scale.go, describe.go (list, endpoints,
//     describe), logs.go and remove.go. Deploy finds the instance's replica
//     credential secret that pulsed creates and fails with
//     [ErrNoReplicaAuth] without one. They, gatewayca.go and readiness.go
//     are the only files that use the Docker client; scaling and waiting go
//     through internal/swarmscale, which pulsed's scaler shares, and a
//     task counts as a running replica by internal/catalog's Up, the
//     replica catalog's own rule.
//   - Readiness (readiness.go): [Swarm.WaitReady] over a pure decision from
//     the service, its tasks and pulsed's replica catalog (a
//     [CatalogSource], which the CLI reads over pulsed's API):
//     ready once Swarm runs the new spec and the gateway routes every replica,
//     failed with Swarm's reason when it pauses or rolls the update back.
package function

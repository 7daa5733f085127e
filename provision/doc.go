// Package provision reaches the nodes of a Pulse cluster over SSH: it parses
// targets ([user@]host[:port]), dials them with keys from the SSH agent or key
// files, runs commands, and talks to a node's Docker Engine through
// `docker system dial-stdio` over the SSH connection (what DOCKER_HOST=ssh://
// does, without the docker CLI on the control node). node.go joins machines
// to the swarm (AddNode), nodelist.go lists them (ListNodes), noderemove.go
// removes them (RemoveNode),
// labelling each with its SSH target (contract.LabelNodeSSH). For checks
// that run on a node (doctor.RunNode), snapshot.go reads the node's files
// in one session (Snapshot: an fs.FS) and command.go runs a command as
// os/exec would (CombinedOutput: a doctor.Runner).
//
// Host keys are always checked against known_hosts (golang.org/x/crypto/ssh/
// knownhosts). A host seen for the first time is accepted only when the caller
// says so (Config.AcceptNewHostKey, or a yes from Config.Prompt), and its key
// is then appended to known_hosts. A known host offering a different key is
// refused whatever the configuration, as OpenSSH does.
package provision

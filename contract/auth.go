package contract

import (
	"crypto/sha256"
	"encoding/hex"
)

// Replica authentication (issue 12, point 1). Replicas publish their port
// on every node's interfaces (Swarm's host-mode ports cannot be bound to one
// address), so a replica serves only requests that carry its install's
// replica credential: HAProxy adds it to every request and health check it
// sends, the cold-start path checks it, and the collector presents it when
// it scrapes MetricsPath. Anything else gets 403.
//
// The credential is a random value per instance, kept by pulsed in a file
// (pulsed's replica_auth_file, 0640 root:netdata so that the collector can
// read it) and handed to replicas as a Docker secret: pulsed creates the
// secret, named by ReplicaAuthSecretName, labelled LabelInstance=instance
// and LabelRole=RoleReplicaAuth; `pulse deploy` attaches it at
// ReplicaAuthSecretTarget and sets EnvReplicaAuthFile to its path.
const (
	// HeaderReplicaAuth carries the credential; the watchdog compares it in
	// constant time and removes it, so a function never sees it.
	HeaderReplicaAuth = "X-Pulse-Replica-Auth"
	// EnvReplicaAuthFile names the file holding the credential in the
	// replica. Unset: the watchdog checks nothing (a watchdog run by hand or
	// by a benchmark). Set but unreadable or empty: it refuses to start.
	EnvReplicaAuthFile = "PULSE_REPLICA_AUTH_FILE"
	// ReplicaAuthSecretTarget is the secret's file name under /run/secrets.
	ReplicaAuthSecretTarget = "pulse-replica-auth"
	// ReplicaAuthPath is where a replica reads it.
	ReplicaAuthPath = "/run/secrets/" + ReplicaAuthSecretTarget
	// LabelRole marks the Docker objects Pulse creates for itself.
	LabelRole = "pulse.role"
	// RoleReplicaAuth is LabelRole's value on the replica credential secret.
	RoleReplicaAuth = "replica-auth"
	// DefaultReplicaAuthFile is pulsed's default replica_auth_file.
	DefaultReplicaAuthFile = "/etc/pulse/replica-auth"
)

// ReplicaAuthSecretName is the Docker secret that holds credential for
// instance: the name carries a digest of the value, because a secret cannot
// change, so a new credential is a new secret.
func ReplicaAuthSecretName(instance, credential string) string {
	sum := sha256.Sum256([]byte(credential))
	return "pulse-" + instance + "-replica-auth-" + hex.EncodeToString(sum[:6])
}

// Invoke keys (issue 12, point 2). A function may have several keys (add
// the new one, then remove the old: rotation without downtime). pulsed keeps
// only each key's SHA-256; the CLI creates or takes the key and sends its
// digest over pulsed's API, which needs the management token.
const (
	// KeysPath is pulsed's key store: GET KeysPath lists every function's
	// key ids; GET/POST KeysPath+FUNCTION lists/adds one function's keys
	// (body KeyAdd); DELETE KeysPath+FUNCTION+"/"+ID removes one.
	KeysPath = "/v1/keys/"
	// DefaultAPITokenFile is pulsed's default api_token_file: the bearer
	// token of the management endpoints (keys). It is not the alarm
	// webhook's token, which the netdata user can read.
	DefaultAPITokenFile = "/etc/pulse/api-token"
)

// KeyAdd is the body of POST KeysPath+FUNCTION.
type KeyAdd struct {
	// ID names the key for `pulse key ls|rm` (letters, digits, '-', '_';
	// at most 32). Empty: pulsed picks one.
	ID string `json:"id,omitempty"`
	// SHA256 is the lowercase hex SHA-256 of the key itself (the bytes
	// after "Bearer " in the request's Authorization header).
	SHA256 string `json:"sha256"`
}

// KeyInfo describes one stored key: never the key, nor its digest.
type KeyInfo struct {
	Function string `json:"function"`
	ID       string `json:"id"`
	Created  string `json:"created"` // RFC 3339
}

// KeyDigest is KeyAdd.SHA256 for key.
func KeyDigest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// FunctionNameProblem says why name cannot be a function's (a DNS label:
// lowercase letters, digits and '-', starting with a letter, not ending
// with '-', at most 63 characters), or "".
func FunctionNameProblem(name string) string {
	if name == "" || len(name) > 63 {
		return "want 1 to 63 lowercase letters, digits and '-'"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "want lowercase letters, digits and '-' (a function name)"
		}
	}
	if name[0] < 'a' || name[0] > 'z' || name[len(name)-1] == '-' {
		return "want a name that starts with a letter and does not end with '-'"
	}
	return ""
}

// KeyIDProblem says why id cannot name an invoke key (KeyAdd.ID: 1 to 32
// letters, digits, '-' or '_'), or "".
func KeyIDProblem(id string) string {
	if id == "" || len(id) > 32 {
		return "want 1 to 32 letters, digits, '-' or '_'"
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "want 1 to 32 letters, digits, '-' or '_'"
		}
	}
	return ""
}

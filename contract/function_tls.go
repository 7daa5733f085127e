package contract

import (
	"crypto/sha256"
	"encoding/hex"
)

// The gateway's CA in replicas (issue 12, point 16). Replicas are FROM
// scratch images with no CA bundle, so a function that calls the gateway
// over https (EnvGatewayURL) could verify no certificate. `pulse deploy`
// hands them the CA that the CLI trusts (its ca_file) as a Docker secret,
// named by GatewayCASecretName and labelled LabelInstance=instance and
// LabelRole=RoleGatewayCA, mounted at GatewayCAPath, and sets
// EnvSSLCertFile to that path: Go's crypto/x509 reads it on Linux, and so do
// OpenSSL and libcurl.
const (
	// RoleGatewayCA is LabelRole's value on a gateway CA secret.
	RoleGatewayCA = "gateway-ca"
	// GatewayCASecretTarget is the secret's file name under /run/secrets.
	GatewayCASecretTarget = "pulse-gateway-ca"
	// GatewayCAPath is where a replica reads the CA bundle (PEM).
	GatewayCAPath = "/run/secrets/" + GatewayCASecretTarget
	// EnvSSLCertFile names the CA bundle that TLS clients in a replica
	// trust.
	EnvSSLCertFile = "SSL_CERT_FILE"
)

// GatewayCASecretName is the Docker secret that holds the PEM bundle pem
// for instance: the name carries a digest of the bundle, because a secret
// cannot change, so a new CA is a new secret. Docker caps a secret's name
// at 64 bytes: past that (an instance name over 34 bytes) the name is
// "pulse-gateway-ca-" and a digest of the instance and the bundle.
func GatewayCASecretName(instance string, pem []byte) string {
	sum := sha256.Sum256(pem)
	if name := "pulse-" + instance + "-gateway-ca-" + hex.EncodeToString(sum[:6]); len(name) <= maxSecretName {
		return name
	}
	h := sha256.New()
	h.Write([]byte(instance))
	h.Write([]byte{0})
	h.Write(pem)
	return "pulse-gateway-ca-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// maxSecretName is the longest Docker secret name (swarmkit's limit).
const maxSecretName = 64

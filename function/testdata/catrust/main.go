// Command catrust is the fork-mode test function of
// function/gatewayca_docker_test.go: it verifies the server certificate in
// its request body (PEM) for the host name gateway.test against the
// replica's system CAs (crypto/x509's
// SystemCertPool, which reads SSL_CERT_FILE), and answers "trusted", or
// "untrusted: " and why. Built static with CGO_ENABLED=0.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Printf("error: read the body: %v\n", err)
		return
	}
	fmt.Printf("SSL_CERT_FILE=%s\n", os.Getenv("SSL_CERT_FILE"))
	b, _ := pem.Decode(body)
	if b == nil {
		fmt.Println("error: no PEM certificate in the body")
		return
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		fmt.Printf("untrusted: no system CAs: %v\n", err)
		return
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "gateway.test"}); err != nil {
		fmt.Printf("untrusted: %v\n", err)
		return
	}
	fmt.Println("trusted")
}

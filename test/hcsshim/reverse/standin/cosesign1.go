//go:build ignore

// Package cosesign1 stands in for github.com/Microsoft/cosesign1go's
// package of the same name, which the Go module proxy does not serve. Only
// confidential containers' policy fragments (COSE Sign1 envelopes) reach
// it; off Hyper-V with the open-door policy nothing does. Every call fails.
package cosesign1

import (
	"crypto"
	"errors"
)

var errUnavailable = errors.New("COSE Sign1 envelopes are not supported in this build (cosesign1go stand-in)")

// COSE_Header_CWTClaims is the CWT claims header label (RFC 9597).
const COSE_Header_CWTClaims int64 = 15

// ParsedCOSEReceipt is a transparency receipt.
type ParsedCOSEReceipt struct {
	Issuer string
	Kid    string
}

// Validate fails: receipts are not supported.
func (ParsedCOSEReceipt) Validate(map[string]crypto.PublicKey) error { return errUnavailable }

// UnpackedCoseSign1 is an unpacked envelope.
type UnpackedCoseSign1 struct {
	Issuer      string
	Feed        string
	ContentType string
	ChainPem    string
	Protected   map[any]any
	Payload     []byte
	Receipts    []ParsedCOSEReceipt
}

// UnpackAndValidateCOSE1CertChain fails: envelopes are not supported.
func UnpackAndValidateCOSE1CertChain([]byte) (*UnpackedCoseSign1, error) {
	return nil, errUnavailable
}

// ParseTTLPayload fails: transparency trust lists are not supported.
func ParseTTLPayload([]byte) (map[string]map[string]crypto.PublicKey, error) {
	return nil, errUnavailable
}

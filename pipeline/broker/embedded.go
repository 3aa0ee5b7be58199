package broker

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartEmbedded runs a NATS server with JetStream in this process, storing
// streams under storeDir. It requires the same credentials that clients are
// configured with, so a configured secret protects the embedded listener too.
func StartEmbedded(c Config, storeDir string, log *slog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "faultline-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		// Whole OTLP batches travel as single messages.
		MaxPayload:    8 << 20,
		NoSigs:        true,
		NoLog:         true,
		Username:      c.User,
		Password:      c.Password,
		Authorization: c.Token,
	}
	if c.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: tls: %w", err)
		}
		tc.MinVersion = tls.VersionTLS12
		opts.TLSConfig = tc
		opts.TLS = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready within 30s on %s", c.Listen)
	}
	if log != nil {
		log.Info("embedded nats started", "url", s.ClientURL(), "store", storeDir)
	}
	return s, nil
}

package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apiTimeout bounds one attempt of a JetStream API call made through Retry.
const apiTimeout = 5 * time.Second

// Transient reports whether a JetStream API call failed for a reason that
// passes by itself on a cluster: no answer in time (the stream, consumer or
// meta leader it needs is being elected, which on a loaded machine takes
// seconds), the connection between servers, or JetStream answering that it
// is temporarily unavailable or has no peers to place a replica on yet (a
// server still joining, or down). Errors of the request itself are not.
func Transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 10008: cluster temporarily unavailable; 10005: no suitable
		// peers for placement; any 503 is JetStream saying "not now".
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10005
	}
	return false
}

// Retry runs f, each attempt bounded by its own timeout, until it succeeds,
// fails with an error that is not Transient, or ctx ends. Roles call it for
// the JetStream API calls they make at start, so that a role started while
// the cluster elects a leader, or with one server down, waits for it instead
// of exiting.
func Retry(ctx context.Context, log *slog.Logger, what string, f func(ctx context.Context) error) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0)), ctx)
	attempt := 0
	err := backoff.Retry(func() error {
		attempt++
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !Transient(err) {
			return backoff.Permanent(err)
		}
		log.Warn("jetstream not ready, retrying", "what", what, "attempt", attempt, "err", err)
		return err
	}, b)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return err
}

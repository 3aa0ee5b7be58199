package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Shuffle reorders requests whose event times lie within window of each
// other, as a fleet of collectors with skewed clocks would deliver them:
// each request moves by a random delay below window. Sorting is stable, so
// window 0 keeps the order.
func Shuffle(reqs []Request, window time.Duration, seed uint64) []Request {
	if window <= 0 {
		return reqs
	}
	rng := rand.New(rand.NewPCG(seed, ^seed))
	type keyed struct {
		r   Request
		key time.Time
	}
	ks := make([]keyed, len(reqs))
	for i, r := range reqs {
		ks[i] = keyed{r, r.At.Add(time.Duration(rng.Int64N(int64(window))))}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return a.key.Compare(b.key) })
	out := make([]Request, len(ks))
	for i, k := range ks {
		out[i] = k.r
	}
	return out
}

// Sender posts requests to a faultline gateway.
type Sender struct {
	BaseURL string // e.g. http://127.0.0.1:4318
	Token   string // bearer token, when the gateway requires one
	Client  *http.Client
	// Parallel requests in flight; order is kept between requests more
	// than a batch apart. Default 4.
	Parallel int
}

// Send posts every request, retrying 429 and 503 (honouring Retry-After)
// until ctx ends. Any other non-2xx status fails.
func (s *Sender) Send(ctx context.Context, reqs []Request) error {
	if s.Client == nil {
		s.Client = &http.Client{Timeout: 30 * time.Second}
	}
	par := s.Parallel
	if par <= 0 {
		par = 4
	}
	for i := 0; i < len(reqs); i += par {
		end := min(i+par, len(reqs))
		var wg sync.WaitGroup
		errs := make([]error, end-i)
		for j := i; j < end; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				errs[j-i] = s.post(ctx, reqs[j])
			}(j)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Sender) post(ctx context.Context, r Request) error {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.BaseURL+r.Path, bytes.NewReader(r.Body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", r.ContentType)
		if s.Token != "" {
			req.Header.Set("Authorization", "Bearer "+s.Token)
		}
		resp, err := s.Client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt > 50 {
				return fmt.Errorf("post %s: %w", r.Path, err)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			wait := 200 * time.Millisecond
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 {
				wait = time.Duration(ra) * time.Second
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		default:
			return fmt.Errorf("post %s: %s: %s", r.Path, resp.Status, bytes.TrimSpace(body))
		}
	}
}

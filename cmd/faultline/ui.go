package main

import (
	"context"

	"github.com/faultline-dev/faultline/pipeline/ui"
)

// startUI serves the web UI on FAULTLINE_UI_LISTEN (empty: off). Unless
// FAULTLINE_WEBHOOK_BASE_URL names another base, the links that alerts
// carry (webhook links, Slack buttons, PagerDuty links) point at its
// incident pages, so it starts before the notifier.
func startUI(s *stack) error {
	if s.cfg.UI.Listen == "" {
		return nil
	}
	u, err := ui.New(s.cfg.UI, s.ch, s.cfg.ClickHouse.Database, s.log.With("component", "ui"))
	if err != nil {
		return err
	}
	if err := u.Listen(s.cfg.UI.Listen); err != nil {
		return err
	}
	s.ui = u
	s.onStop(func(ctx context.Context) { _ = u.Shutdown(ctx) })
	if s.cfg.Webhook.BaseURL == "" {
		s.cfg.Webhook.BaseURL = ui.BaseURL(u.Addr())
	}
	return nil
}

// uiURL is the UI's address for the start-up banner.
func uiURL(s *stack) string {
	if s.ui == nil {
		return "off (FAULTLINE_UI_LISTEN is empty)"
	}
	return ui.BaseURL(s.ui.Addr()) + "/  (incidents, DORA, deploys)"
}

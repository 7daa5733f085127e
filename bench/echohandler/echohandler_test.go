package echohandler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEcho(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantBody   string
	}{
		{name: "post", method: http.MethodPost, body: "hello", wantStatus: http.StatusOK, wantBody: "hello"},
		{name: "get, empty body", method: http.MethodGet, wantStatus: http.StatusOK, wantBody: ""},
		{name: "at the limit", method: http.MethodPost, body: strings.Repeat("x", MaxBody), wantStatus: http.StatusOK, wantBody: strings.Repeat("x", MaxBody)},
		{name: "over the limit", method: http.MethodPost, body: strings.Repeat("x", MaxBody+1), wantStatus: http.StatusRequestEntityTooLarge,
			wantBody: "echo: read body: http: request body too large\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			New().ServeHTTP(rec, httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body)))
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", rec.Code, truncate(rec.Body.String()), tt.wantStatus, truncate(tt.wantBody))
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

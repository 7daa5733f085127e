package scaler

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pulsefaas/pulse/contract"
)

// Paths NewHandler serves; pulsed mounts the handler at each.
var Paths = []string{contract.AlarmsPath, contract.FunctionsPath, contract.EventsPath, contract.PulsedMetricsPath}

// NewHandler returns the scaler's HTTP API:
//
//	POST AlarmsPath     the alarm webhook: 202 at once, the work is done later
//	GET  FunctionsPath  contract.Functions
//	GET  EventsPath     contract.ScaleEvents
//	GET  /metrics       the scaler's metrics (no token)
//
// Every other endpoint needs "Authorization: Bearer <token>" (401 without
// it). An empty token (the token file is missing or empty) refuses them all
// with 503: a webhook without a secret would let anyone scale. Errors are
// JSON {"error": "..."}.
func NewHandler(s *Scaler, token string) http.Handler {
	h := &handler{s: s, tok: newTokenChecker(token)}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = h.errorHandler
	auth := h.auth
	e.POST(contract.AlarmsPath, h.alarm, auth)
	e.GET(contract.FunctionsPath, h.functions, auth)
	e.GET(contract.EventsPath, h.events, auth)
	e.GET(contract.PulsedMetricsPath, h.metrics)
	return e
}

type handler struct {
	s   *Scaler
	tok tokenChecker
}

type errorBody struct {
	Error string `json:"error"`
}

// alarmResponse is the webhook's 202 body.
type alarmResponse struct {
	Result string `json:"result"` // AlarmAccepted, AlarmDuplicate, ...
}

func (h *handler) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !h.tok.set {
			h.countAlarm(c, "unavailable")
			h.s.log.Debug("request refused: no alarm token configured", "path", c.Path())
			return echo.NewHTTPError(http.StatusServiceUnavailable, "no token configured (alarm_token_file missing or empty): pulsed refuses every request here")
		}
		if !h.tok.check(c.Request().Header.Get("Authorization")) {
			h.countAlarm(c, "unauthorized")
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="pulsed"`)
			return echo.NewHTTPError(http.StatusUnauthorized, "missing or wrong bearer token")
		}
		return next(c)
	}
}

// countAlarm counts a webhook request refused before alarm ran.
func (h *handler) countAlarm(c echo.Context, result string) {
	if c.Path() == contract.AlarmsPath {
		h.s.m.alarms.inc(result)
	}
}

func (h *handler) alarm(c echo.Context) error {
	start := time.Now()
	defer func() { h.s.m.webhookDuration.observe(time.Since(start).Seconds()) }()
	req := c.Request()
	tooLarge := echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", contract.MaxAlarmBody))
	if req.ContentLength > contract.MaxAlarmBody {
		h.s.m.alarms.inc("too_large")
		return tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, contract.MaxAlarmBody+1))
	if err != nil {
		h.s.m.alarms.inc("bad_request")
		return echo.NewHTTPError(http.StatusBadRequest, "read body: "+err.Error())
	}
	if len(body) > contract.MaxAlarmBody {
		h.s.m.alarms.inc("too_large")
		return tooLarge
	}
	ev, err := parseAlarm(body)
	if err != nil {
		h.s.m.alarms.inc("bad_request")
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	result, err := h.s.Alarm(ev)
	switch {
	case errors.Is(err, ErrNotFound):
		h.s.m.alarms.inc("unknown_function")
		return echo.NewHTTPError(http.StatusNotFound, err.Error())
	case errors.Is(err, ErrCatalogPending):
		h.s.m.alarms.inc("unavailable")
		c.Response().Header().Set("Retry-After", "1")
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	case err != nil:
		return err
	}
	h.s.m.alarms.inc(result)
	h.s.log.Debug("alarm", "function", ev.Function, "alarm", ev.Alarm, "status", ev.Status,
		"value", ev.Value, "unique_id", ev.UniqueID, "when", ev.When, "result", result)
	return c.JSON(http.StatusAccepted, alarmResponse{Result: result})
}

func (h *handler) functions(c echo.Context) error {
	fns, err := h.s.Functions()
	if errors.Is(err, ErrCatalogPending) {
		c.Response().Header().Set("Retry-After", "1")
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, fns)
}

func (h *handler) events(c echo.Context) error {
	return c.JSON(http.StatusOK, h.s.Events())
}

func (h *handler) metrics(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderContentType, "text/plain; version=0.0.4; charset=utf-8")
	c.Response().WriteHeader(http.StatusOK)
	return h.s.m.write(c.Response())
}

// errorHandler answers every error as JSON {"error": "..."}.
func (h *handler) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = he.Code
		if m, ok := he.Message.(string); ok {
			msg = m
		} else {
			msg = http.StatusText(code)
		}
	} else {
		h.s.log.Error("request failed", "path", c.Request().URL.Path, "err", err)
	}
	if err := c.JSON(code, errorBody{Error: msg}); err != nil {
		h.s.log.Debug("write error response", "err", err)
	}
}

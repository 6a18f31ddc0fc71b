package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// send sends a prepared request with the client's token and the caller's
// deadline, for answers too large to read into memory (backups). An
// answer of 300 or more becomes an *APIError and its body is closed.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if dl, ok := req.Context().Deadline(); ok {
		req.Header.Set(timeoutHeader, fmt.Sprint(time.Until(dl).Milliseconds()))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Code == "" {
			ae.Code, ae.Msg = "http_error", strings.TrimSpace(string(data))
		}
		return nil, ae
	}
	return resp, nil
}

// decodeAnswer decodes a JSON answer body.
func decodeAnswer(resp *http.Response, out any) error {
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

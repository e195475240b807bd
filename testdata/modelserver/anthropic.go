package main

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Anthropic's Messages API, as Claude Code uses it.

type anthropicRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"` // a string, or blocks
	} `json:"messages"`
	Tools []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
}

// toolResults counts the tool results the conversation carries.
func (r anthropicRequest) toolResults() int {
	n := 0
	for _, m := range r.Messages {
		var blocks []struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(m.Content, &blocks) != nil {
			continue // a string
		}
		for _, b := range blocks {
			if b.Type == "tool_result" {
				n++
			}
		}
	}
	return n
}

func (s *server) anthropic(w http.ResponseWriter, r *http.Request) {
	var req anthropicRequest
	if err := s.decode("anthropic", r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tools := make([]tool, len(req.Tools))
	for i, t := range req.Tools {
		tools[i] = tool{t.Name, t.InputSchema}
	}
	var block map[string]any
	stop := "end_turn"
	done := req.toolResults()
	if sh, command, text := s.script.reply(tools, done); command != "" {
		block = map[string]any{"type": "tool_use", "id": fmt.Sprintf("toolu_%02d", done), "name": sh.name,
			"input": sh.arguments(command)}
		stop = "tool_use"
	} else {
		block = map[string]any{"type": "text", "text": text}
	}
	msg := map[string]any{"id": fmt.Sprintf("msg_%02d", done), "type": "message", "role": "assistant", "model": req.Model,
		"content": []any{block}, "stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]int{"input_tokens": 100, "output_tokens": 20}}
	if !req.Stream {
		writeJSON(w, msg)
		return
	}
	e := newSSE(w)
	start := map[string]any{}
	for k, v := range msg {
		start[k] = v
	}
	start["content"], start["stop_reason"] = []any{}, nil
	e.event("message_start", map[string]any{"type": "message_start", "message": start})
	if block["type"] == "tool_use" {
		input, _ := json.Marshal(block["input"])
		e.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "tool_use", "id": block["id"], "name": block["name"], "input": map[string]any{}}})
		e.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "input_json_delta", "partial_json": string(input)}})
	} else {
		e.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}})
		e.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": block["text"]}})
	}
	e.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	e.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]int{"output_tokens": 20}})
	e.event("message_stop", map[string]any{"type": "message_stop"})
}

func (s *server) anthropicCount(w http.ResponseWriter, r *http.Request) {
	var req json.RawMessage
	if err := s.decode("anthropic", r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, map[string]int{"input_tokens": 100})
}

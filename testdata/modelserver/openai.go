package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// OpenAI's Responses API, as Codex CLI uses it.

type openaiRequest struct {
	Model  string `json:"model"`
	Stream bool   `json:"stream"`
	Input  []struct {
		Type string `json:"type"`
	} `json:"input"`
	Tools []struct {
		Type       string          `json:"type"`
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"tools"`
}

// toolResults counts the tool outputs the conversation carries.
func (r openaiRequest) toolResults() int {
	n := 0
	for _, it := range r.Input {
		if strings.HasSuffix(it.Type, "_call_output") {
			n++
		}
	}
	return n
}

func (s *server) openai(w http.ResponseWriter, r *http.Request) {
	var req openaiRequest
	if err := s.decode("openai", r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var tools []tool
	for _, t := range req.Tools {
		if t.Type == "function" {
			tools = append(tools, tool{t.Name, t.Parameters})
		}
	}
	done := req.toolResults()
	id := fmt.Sprintf("resp_%02d", done)
	var item map[string]any
	if sh, command, text := s.script.reply(tools, done); command != "" {
		args, _ := json.Marshal(sh.arguments(command))
		item = map[string]any{"type": "function_call", "id": fmt.Sprintf("fc_%02d", done), "call_id": fmt.Sprintf("call_%02d", done),
			"name": sh.name, "arguments": string(args), "status": "completed"}
	} else {
		item = map[string]any{"type": "message", "id": fmt.Sprintf("msg_%02d", done), "role": "assistant", "status": "completed",
			"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}}
	}
	usage := map[string]any{"input_tokens": 100, "output_tokens": 20, "total_tokens": 120,
		"input_tokens_details": map[string]int{"cached_tokens": 0}, "output_tokens_details": map[string]int{"reasoning_tokens": 0}}
	resp := map[string]any{"id": id, "object": "response", "status": "completed", "model": req.Model,
		"output": []any{item}, "usage": usage}
	if !req.Stream {
		writeJSON(w, resp)
		return
	}
	e := newSSE(w)
	created := map[string]any{"id": id, "object": "response", "status": "in_progress", "model": req.Model, "output": []any{}}
	e.event("response.created", map[string]any{"type": "response.created", "response": created})
	e.event("response.output_item.added", map[string]any{"type": "response.output_item.added", "output_index": 0, "item": item})
	e.event("response.output_item.done", map[string]any{"type": "response.output_item.done", "output_index": 0, "item": item})
	e.event("response.completed", map[string]any{"type": "response.completed", "response": resp})
}

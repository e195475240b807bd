package main

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Gemini's generateContent and streamGenerateContent, as Gemini CLI uses
// them with an API key.

type geminiRequest struct {
	Contents []struct {
		Role  string `json:"role"`
		Parts []struct {
			FunctionResponse json.RawMessage `json:"functionResponse"`
		} `json:"parts"`
	} `json:"contents"`
	Tools []struct {
		FunctionDeclarations []struct {
			Name                 string          `json:"name"`
			Parameters           json.RawMessage `json:"parameters"`
			ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema"`
		} `json:"functionDeclarations"`
	} `json:"tools"`
	GenerationConfig struct {
		ResponseMimeType   string          `json:"responseMimeType"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
	} `json:"generationConfig"`
}

// toolResults counts the function responses the conversation carries.
func (r geminiRequest) toolResults() int {
	n := 0
	for _, c := range r.Contents {
		for _, p := range c.Parts {
			if len(p.FunctionResponse) > 0 {
				n++
			}
		}
	}
	return n
}

func (s *server) gemini(w http.ResponseWriter, r *http.Request) {
	model, method, _ := strings.Cut(r.PathValue("call"), ":")
	var req geminiRequest
	if err := s.decode("gemini", r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if method == "countTokens" {
		writeJSON(w, map[string]int{"totalTokens": 100})
		return
	}
	var tools []tool
	for _, t := range req.Tools {
		for _, f := range t.FunctionDeclarations {
			params := f.Parameters
			if len(params) == 0 {
				params = f.ParametersJSONSchema
			}
			tools = append(tools, tool{f.Name, params})
		}
	}
	done := req.toolResults()
	var part map[string]any
	sh, command, text := s.script.reply(tools, done)
	switch {
	case req.GenerationConfig.ResponseMimeType == "application/json":
		// A side request for JSON (Gemini CLI asks who speaks next).
		schema := req.GenerationConfig.ResponseJSONSchema
		if len(schema) == 0 {
			schema = req.GenerationConfig.ResponseSchema
		}
		b, _ := json.Marshal(sample(schema))
		part = map[string]any{"text": string(b)}
	case command != "":
		part = map[string]any{"functionCall": map[string]any{"name": sh.name, "args": sh.arguments(command)}}
	default:
		part = map[string]any{"text": text}
	}
	resp := map[string]any{
		"candidates":    []any{map[string]any{"content": map[string]any{"role": "model", "parts": []any{part}}, "finishReason": "STOP", "index": 0}},
		"usageMetadata": map[string]int{"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
		"modelVersion":  model,
	}
	if method != "streamGenerateContent" {
		writeJSON(w, resp)
		return
	}
	newSSE(w).event("", resp)
}

// sample returns a value that satisfies a JSON schema as far as the CLIs'
// side requests need: the user speaks next, strings say "ok", numbers are
// their minimum (a classifier's score) or 1.
func sample(schema json.RawMessage) any {
	var s struct {
		Type       any                        `json:"type"`
		Enum       []any                      `json:"enum"`
		Properties map[string]json.RawMessage `json:"properties"`
		Minimum    *float64                   `json:"minimum"`
	}
	_ = json.Unmarshal(schema, &s)
	switch {
	case len(s.Enum) > 0:
		return s.Enum[0]
	case len(s.Properties) > 0 || isType(s.Type, "object"):
		out := map[string]any{}
		for k, v := range s.Properties {
			out[k] = sample(v)
		}
		if _, ok := out["next_speaker"]; ok {
			out["next_speaker"] = "user"
		}
		return out
	case isType(s.Type, "array"):
		return []any{}
	case isType(s.Type, "boolean"):
		return false
	case isType(s.Type, "number"), isType(s.Type, "integer"):
		if s.Minimum != nil {
			return *s.Minimum
		}
		return 1
	}
	return "ok"
}

// Command modelserver is a scripted model server for the real agent CLIs
// under test: it speaks as much of Anthropic's Messages API (Claude Code),
// OpenAI's Responses API (Codex CLI) and Gemini's generateContent (Gemini
// CLI) as a whole non-interactive run needs, streaming included, and plays
// a script: one shell command per turn, then a final answer. Which turn a
// request is at is counted from the tool results it carries, so the server
// keeps no conversation state. Every request is logged, so that a test can
// read what the agent sent back as each tool result.
//
//	modelserver -script script.json -log requests.jsonl [-addr 127.0.0.1:0]
//
// The script is {"commands": ["echo hello", ...], "answer": "done"}. The
// server prints "listening on ADDR" once it serves.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// script is what the "model" asks for.
type script struct {
	Commands []string `json:"commands"`
	Answer   string   `json:"answer"`
}

// turn is the model's next move: run command (a shell tool call), or answer.
type turn struct {
	command string
	answer  string
}

// next is the turn after done tool results.
func (s script) next(done int) turn {
	if done < len(s.Commands) {
		return turn{command: s.Commands[done]}
	}
	return turn{answer: s.Answer}
}

// logger appends each request to a JSON lines file.
type logger struct {
	mu sync.Mutex
	f  *os.File
}

func (l *logger) log(api, path string, body json.RawMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	line, _ := json.Marshal(map[string]any{"time": time.Now().UTC(), "api": api, "path": path, "body": body})
	l.f.Write(append(line, '\n'))
}

func main() {
	scriptPath := flag.String("script", "", "the script (JSON: commands, answer)")
	logPath := flag.String("log", "", "where to log every request (JSON lines)")
	addr := flag.String("addr", "127.0.0.1:0", "where to listen")
	flag.Parse()
	b, err := os.ReadFile(*scriptPath)
	if err != nil {
		fail(err)
	}
	var s script
	if err := json.Unmarshal(b, &s); err != nil {
		fail(fmt.Errorf("%s: %w", *scriptPath, err))
	}
	f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err)
	}
	srv := &server{script: s, log: &logger{f: f}}
	fmt.Printf("listening on %s\n", ln.Addr())
	fail(http.Serve(ln, srv.routes()))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "modelserver:", err)
	os.Exit(1)
}

type server struct {
	script script
	log    *logger
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.anthropic)
	mux.HandleFunc("POST /v1/messages/count_tokens", s.anthropicCount)
	mux.HandleFunc("POST /v1/responses", s.openai)
	mux.HandleFunc("POST /responses", s.openai)
	mux.HandleFunc("POST /v1beta/models/{call}", s.gemini)
	mux.HandleFunc("POST /v1/models/{call}", s.gemini)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.log.log("unknown", r.Method+" "+r.URL.String(), nil)
		http.Error(w, `{"error":{"message":"not served by the scripted model server"}}`, http.StatusNotFound)
	})
	return mux
}

// decode reads a request's JSON body into v and logs it.
func (s *server) decode(api string, r *http.Request, v any) error {
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		return err
	}
	s.log.log(api, r.URL.String(), raw)
	return json.Unmarshal(raw, v)
}

// sse writes Server-Sent Events.
type sse struct {
	w http.ResponseWriter
}

func newSSE(w http.ResponseWriter) sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return sse{w}
}

// event writes one event; name "" writes data alone.
func (e sse) event(name string, data any) {
	b, _ := json.Marshal(data)
	if name != "" {
		fmt.Fprintf(e.w, "event: %s\n", name)
	}
	fmt.Fprintf(e.w, "data: %s\n\n", b)
	if f, ok := e.w.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

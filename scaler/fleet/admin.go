package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lbscale/internal/adminauth"
	"lbscale/scaler/control"
	"lbscale/scaler/dashboard"
)

// ParamPool selects a pool on /status, the dashboard and its stream
// (?pool=NAME); without it, the first pool of the file.
const ParamPool = "pool"

// opPoolFile names a pool file that did not load among /status problems.
const opPoolFile = "pool file"

// Handler serves the process's admin endpoints for every pool: the live
// dashboard at / (?pool=NAME, its data stream at dashboard.StreamPath
// following the page's pool), /healthz (every pool's controller), /status
// (one pool's, ?pool=NAME; 404 for a pool this scaler does not run) and
// /metrics (every pool's series and the process's, once). With token set,
// everything but /healthz and the page itself (which holds no data, and
// asks for the token) wants it as a bearer token.
func (f *Fleet) Handler(token string) http.Handler {
	r := chi.NewRouter()
	r.Get("/", func(w http.ResponseWriter, req *http.Request) {
		if c := f.pick(w, req); c != nil {
			c.Dashboard().Page(w, req)
		}
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		var bad []string
		for _, c := range f.controllers() {
			if err := c.Healthy(); err != nil {
				bad = append(bad, "pool "+c.Pool()+": "+err.Error())
			}
		}
		if len(bad) > 0 {
			http.Error(w, strings.Join(bad, "\n"), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	r.Group(func(r chi.Router) {
		r.Use(adminauth.Bearer(token))
		r.Get("/status", func(w http.ResponseWriter, req *http.Request) {
			c := f.pick(w, req)
			if c == nil {
				return
			}
			s := c.Status(req.Context())
			s.Retiring = f.Retiring()
			if p := f.reloadProblem(); p != "" {
				s.Problems = maps.Clone(s.Problems)
				if s.Problems == nil {
					s.Problems = map[string]string{}
				}
				s.Problems[opPoolFile] = p
			}
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(s)
		})
		r.Get("/metrics", func(w http.ResponseWriter, req *http.Request) {
			// Built per scrape: the controllers change with reloads. Each
			// controller's registry holds its pool's series only, labelled
			// with the pool; the process's are gathered once.
			gs := prometheus.Gatherers{control.ProcessGatherer(), f.reg}
			for _, c := range f.controllers() {
				gs = append(gs, c.Gatherer())
			}
			promhttp.HandlerFor(gs, promhttp.HandlerOpts{}).ServeHTTP(w, req)
		})
		r.Get(dashboard.StreamPath, func(w http.ResponseWriter, req *http.Request) {
			if c := f.pick(w, req); c != nil {
				c.Dashboard().Stream(w, req)
			}
		})
		r.Post("/deploy", f.serveDeploy)
	})
	return r
}

// serveDeploy records a deploy of the form's (or query's) image to the
// request's pool: 202 with the deploy as JSON, for the leader to carry out
// (it lives in the store, so any scaler may take the request); 409 while
// another deploy is under way; 400 without an image. Deploying the image
// the pool runs already answers 200 with the current deploy.
func (f *Fleet) serveDeploy(w http.ResponseWriter, req *http.Request) {
	c := f.pick(w, req)
	if c == nil {
		return
	}
	req.Body = http.MaxBytesReader(w, req.Body, 1<<16)
	if err := req.ParseForm(); err != nil {
		http.Error(w, "malformed form: "+err.Error(), http.StatusBadRequest)
		return
	}
	image := strings.TrimSpace(req.Form.Get("image"))
	if image == "" || strings.ContainsAny(image, " \t\r\n") {
		http.Error(w, "image=NAME[:TAG] is required (e.g. image=lbscale/webserver:v2)", http.StatusBadRequest)
		return
	}
	d, err := c.StartDeploy(req.Context(), image)
	switch {
	case errors.Is(err, control.ErrDeployBusy):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, "record the deploy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if d.Image == image && d.Phase.Active() {
		w.WriteHeader(http.StatusAccepted)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d)
}

// pick returns the controller of the request's pool (?pool=NAME, else the
// first), or answers 404 and returns nil.
func (f *Fleet) pick(w http.ResponseWriter, req *http.Request) *control.Controller {
	name := req.URL.Query().Get(ParamPool)
	if c := f.Controller(name); c != nil {
		return c
	}
	if name == "" {
		http.Error(w, "this scaler runs no pool", http.StatusNotFound)
	} else {
		http.Error(w, fmt.Sprintf("this scaler runs no pool %q; it runs %s", name, strings.Join(f.Pools(), ", ")), http.StatusNotFound)
	}
	return nil
}

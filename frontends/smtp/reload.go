package smtp

import "github.com/raftmail/raftmail/filters"

// SetPipeline replaces the filter pipeline atomically (the frontend's
// SIGHUP reload). Connections already open keep the pipeline they started
// with until they end; new connections use p. Nothing is dropped.
func (s *Server) SetPipeline(p *filters.Pipeline) { s.pipeline.Store(p) }

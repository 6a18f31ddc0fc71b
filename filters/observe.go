package filters

// VerdictObserver receives every check's own verdict, before its policy
// applies, for metrics (raftmail_filter_verdicts_total). verdict is the
// action's name, or "error" for a Failure (error, panic, timeout).
// Implementations must be quick and safe for concurrent use; a nil
// Config.Observer observes nothing.
type VerdictObserver interface {
	Verdict(check string, stage Stage, verdict string)
}

func (p *Pipeline) observe(check string, stage Stage, v Verdict) {
	if p.cfg.Observer == nil {
		return
	}
	name := v.Action.String()
	if IsFailure(v) {
		name = "error"
	}
	p.cfg.Observer.Verdict(check, stage, name)
}

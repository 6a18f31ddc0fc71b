package frontends

// DeliveryObserver receives the outcome of each delivery a protocol server
// answers, for metrics (raftmail_deliveries_total). proto is "lmtp" or
// "smtp"; code is the reply code given for a recipient (LMTP) or the
// message (SMTP), 250 on success. Implementations must be quick and safe
// for concurrent use; servers accept a nil observer.
type DeliveryObserver interface {
	Delivery(proto string, code int)
}

package command

// Outbound queue and DKIM commands (types 24–29; docs/outbound.md). The
// FSM never reads the clock: the delivery service on the leader decides
// every time (Now, Until, NextAttempt) and carries it in the command.

// QueueRcpt is one remote recipient of a QueueAdd with its DSN parameters
// from RCPT (RFC 3461 §4.1 NOTIFY, §4.2 ORCPT).
type QueueRcpt struct {
	Addr string `msgpack:"addr"`
	// Notify is NEVER, or any of SUCCESS, FAILURE, DELAY; empty means
	// the default (FAILURE, RFC 3461 §4.1).
	Notify []string `msgpack:"notify,omitempty"`
	// ORcpt is the original recipient as "type;address" (RFC 3461 §4.2).
	ORcpt string `msgpack:"orcpt,omitempty"`
}

// QueueAdd stores one submitted message: the remote recipients go into the
// outbound queue, the local ones are delivered in the same apply, and the
// body is stored once (content-addressed, reference-counted).
type QueueAdd struct {
	From  string      `msgpack:"from"`
	Rcpts []QueueRcpt `msgpack:"rcpts"`
	// Local recipients are delivered as a Deliver would.
	Local []string `msgpack:"local,omitempty"`
	Blob  Blob     `msgpack:"blob"`
	// Ret is FULL or HDRS, EnvID the envelope id (RFC 3461 §4.3, §4.4).
	Ret   string `msgpack:"ret,omitempty"`
	EnvID string `msgpack:"envid,omitempty"`
	// Account is the authenticated submitter, for the operator.
	Account string `msgpack:"acct,omitempty"`
}

// QueueItem names the recipients of one queued message in one domain.
type QueueItem struct {
	ID     uint64 `msgpack:"id"`
	Domain string `msgpack:"dom"`
}

// QueueAttempt claims the due recipients of the items for one delivery
// attempt: Holder (a node's delivery service instance) owns them until
// Until. A claim held by another holder is taken only after it expires, or
// at once with Takeover (a new leader's first pass: the old leader's
// attempts may have been cut short, so they count as possible duplicates).
type QueueAttempt struct {
	Items    []QueueItem `msgpack:"items"`
	Holder   string      `msgpack:"holder"`
	Attempt  string      `msgpack:"attempt"`
	Now      int64       `msgpack:"now"`
	Until    int64       `msgpack:"until"`
	Takeover bool        `msgpack:"takeover,omitempty"`
}

// QueueOutcome is what one attempt did for one recipient.
type QueueOutcome uint8

// Outcomes of an attempt.
const (
	OutcomeDelivered QueueOutcome = 1
	OutcomeTempFail  QueueOutcome = 2 // retry at NextAttempt
	OutcomePermFail  QueueOutcome = 3 // bounce
)

// QueueRcptResult is the outcome for one recipient.
type QueueRcptResult struct {
	Addr    string       `msgpack:"addr"`
	Outcome QueueOutcome `msgpack:"out"`
	// Code and Reply are the remote answer (or our own diagnosis), Status
	// its enhanced status code (RFC 3463), MTA the remote host.
	Code   int    `msgpack:"code,omitempty"`
	Status string `msgpack:"status,omitempty"`
	Reply  string `msgpack:"reply,omitempty"`
	MTA    string `msgpack:"mta,omitempty"`
	// Relayed means the remote MTA accepted NOTIFY (it has the DSN
	// extension) and reports success itself (RFC 3461 §6.2.2).
	Relayed bool `msgpack:"relayed,omitempty"`
}

// QueueResult records one attempt's per-recipient outcomes. A temporary
// failure counts only from the attempt that holds the claim; delivered and
// failed are facts whichever attempt reports them.
type QueueResult struct {
	ID          uint64            `msgpack:"id"`
	Attempt     string            `msgpack:"attempt"`
	Now         int64             `msgpack:"now"`
	NextAttempt int64             `msgpack:"next,omitempty"`
	Rcpts       []QueueRcptResult `msgpack:"rcpts"`
}

// QueueAdminOp is an operator's action on a queued message.
type QueueAdminOp uint8

// Operator actions.
const (
	QueueRetry  QueueAdminOp = 1 // attempt pending recipients now (ID 0: every message)
	QueueDelete QueueAdminOp = 2 // drop without a report
	QueueBounce QueueAdminOp = 3 // fail pending recipients, report to the sender
)

// QueueAdmin applies an operator action.
type QueueAdmin struct {
	ID     uint64       `msgpack:"id"`
	Op     QueueAdminOp `msgpack:"op"`
	Now    int64        `msgpack:"now"`
	Reason string       `msgpack:"reason,omitempty"`
}

// QueueDSN delivers a delivery status notification (built by the delivery
// service, RFC 3464) into the sender's mailbox and marks the recipients
// it reports on as reported, removing the message once nothing is left.
type QueueDSN struct {
	ID    uint64   `msgpack:"id"`
	Rcpts []string `msgpack:"rcpts"`
	Blob  Blob     `msgpack:"blob"`
}

// SetDKIMKey sets (or with Remove deletes) the DKIM signing key of a
// domain. Key is the PKCS #8 DER private key; Algo is "rsa" or "ed25519".
type SetDKIMKey struct {
	Domain   string `msgpack:"domain"`
	Selector string `msgpack:"sel,omitempty"`
	Algo     string `msgpack:"algo,omitempty"`
	Key      []byte `msgpack:"key,omitempty"`
	Remove   bool   `msgpack:"rm,omitempty"`
}

// Type implementations.
func (*QueueAdd) Type() Type     { return TypeQueueAdd }
func (*QueueAttempt) Type() Type { return TypeQueueAttempt }
func (*QueueResult) Type() Type  { return TypeQueueResult }
func (*QueueAdmin) Type() Type   { return TypeQueueAdmin }
func (*QueueDSN) Type() Type     { return TypeQueueDSN }
func (*SetDKIMKey) Type() Type   { return TypeSetDKIMKey }

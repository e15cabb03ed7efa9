-- Operations after checkout that span entities and the payment provider are finished after a crash
-- (issue 11): an order being canceled or receiving a return has order_sagas.step canceling /
-- receiving, and a payment with refunds asked of the provider but not yet recorded counts them here.
ALTER TABLE payments ADD COLUMN pending_refunds INTEGER NOT NULL DEFAULT 0 CHECK (pending_refunds >= 0);
CREATE INDEX idx_payments_pending_refunds ON payments (updated_at) WHERE pending_refunds > 0;

DROP INDEX idx_order_sagas_open;
CREATE INDEX idx_order_sagas_open ON order_sagas (updated_at)
  WHERE step IN ('reserving', 'pending_payment', 'canceling', 'receiving');

-- Orders and their lines (seed design "Orders Database"), as projections of the order entity.

CREATE TABLE orders (
  id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  order_number     VARCHAR(50) UNIQUE NOT NULL,
  customer_id      UUID NOT NULL,
  status           VARCHAR(30) NOT NULL DEFAULT 'pending_payment',
  subtotal         DECIMAL(12,2) NOT NULL,
  tax_amount       DECIMAL(12,2) NOT NULL DEFAULT 0,
  shipping_amount  DECIMAL(12,2) NOT NULL DEFAULT 0,
  discount_amount  DECIMAL(12,2) NOT NULL DEFAULT 0,
  total_amount     DECIMAL(12,2) NOT NULL,
  currency         VARCHAR(3) NOT NULL DEFAULT 'USD',
  shipping_address JSONB NOT NULL,
  billing_address  JSONB NOT NULL,
  payment_method   JSONB,
  notes            TEXT,
  version          BIGINT NOT NULL DEFAULT 1,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),

  CONSTRAINT positive_amounts CHECK (
    subtotal >= 0 AND
    tax_amount >= 0 AND
    shipping_amount >= 0 AND
    discount_amount >= 0 AND
    total_amount >= 0
  ),
  CONSTRAINT order_status CHECK (status IN ('pending_payment', 'paid', 'shipped', 'delivered', 'canceled',
                                            'return_requested', 'refunded', 'partially_refunded'))
);
CREATE INDEX idx_orders_customer ON orders(customer_id, created_at DESC, id DESC);
CREATE INDEX idx_orders_status ON orders(status, created_at DESC);
CREATE INDEX idx_orders_created ON orders(created_at DESC, id DESC);

CREATE TABLE order_items (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  order_id        UUID NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  product_id      UUID NOT NULL,
  product_sku     VARCHAR(100) NOT NULL,
  product_name    VARCHAR(500) NOT NULL,
  quantity        INTEGER NOT NULL,
  unit_price      DECIMAL(10,2) NOT NULL,
  total_price     DECIMAL(12,2) NOT NULL,
  product_options JSONB,

  CONSTRAINT positive_quantity CHECK (quantity > 0),
  CONSTRAINT positive_price CHECK (unit_price > 0)
);
CREATE INDEX idx_order_items_order ON order_items(order_id);
CREATE INDEX idx_order_items_product ON order_items(product_id);

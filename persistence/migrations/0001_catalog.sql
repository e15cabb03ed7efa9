-- Catalog: vendors, the category tree and products (seed design "Products Database").
-- Prices are DECIMAL(10,2) as in the seed; the API exposes them as integer minor units.

CREATE TABLE vendors (
  id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name        VARCHAR(200) NOT NULL UNIQUE,
  status      VARCHAR(20) NOT NULL DEFAULT 'active',
  version     BIGINT NOT NULL DEFAULT 1,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE categories (
  id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name        VARCHAR(200) NOT NULL,
  parent_id   UUID REFERENCES categories(id),
  version     BIGINT NOT NULL DEFAULT 1,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  CONSTRAINT category_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE UNIQUE INDEX idx_categories_sibling_name ON categories (COALESCE(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), name);
CREATE INDEX idx_categories_parent ON categories(parent_id);

CREATE TABLE products (
  id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  sku                 VARCHAR(100) UNIQUE NOT NULL,
  name                VARCHAR(500) NOT NULL,
  description         TEXT,
  category_id         UUID REFERENCES categories(id),
  vendor_id           UUID REFERENCES vendors(id),
  base_price          DECIMAL(10,2) NOT NULL,
  current_price       DECIMAL(10,2) NOT NULL,
  currency            VARCHAR(3) NOT NULL DEFAULT 'USD',
  stock_quantity      INTEGER NOT NULL DEFAULT 0,
  reserved_quantity   INTEGER NOT NULL DEFAULT 0,
  low_stock_threshold INTEGER NOT NULL DEFAULT 10,
  weight              DECIMAL(8,3),
  dimensions          JSONB,
  attributes          JSONB,
  images              JSONB,
  status              VARCHAR(20) NOT NULL DEFAULT 'active',
  version             BIGINT NOT NULL DEFAULT 1,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),

  CONSTRAINT positive_price CHECK (base_price > 0),
  CONSTRAINT positive_current_price CHECK (current_price > 0),
  CONSTRAINT positive_stock CHECK (stock_quantity >= 0),
  CONSTRAINT reserved_within_stock CHECK (reserved_quantity >= 0 AND reserved_quantity <= stock_quantity),
  CONSTRAINT product_status CHECK (status IN ('active', 'archived'))
);

CREATE INDEX idx_products_category ON products(category_id);
CREATE INDEX idx_products_vendor ON products(vendor_id);
CREATE INDEX idx_products_price ON products(current_price);
CREATE INDEX idx_products_stock ON products(stock_quantity);
-- Cursor paging orders: newest first and by name, each with the id as the tie-breaker.
CREATE INDEX idx_products_created ON products(created_at DESC, id DESC);
CREATE INDEX idx_products_name ON products(name, id);
CREATE INDEX idx_products_search ON products
  USING gin(to_tsvector('english', name || ' ' || COALESCE(description, '')));

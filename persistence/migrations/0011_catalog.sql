-- Catalog management and search (issue 10): keyset paging by price needs (current_price, id), like
-- the created_at and name orders have since 0001, so every listing sort walks an index and stops after
-- one page. Only active products are listed, so the index leaves archived ones out.
CREATE INDEX idx_products_active_price ON products (current_price, id) WHERE status = 'active';

INSERT INTO products (name, price_cents) VALUES ('kettle', 2999), ('teapot', 1899);

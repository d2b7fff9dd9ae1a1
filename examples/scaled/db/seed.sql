-- Run by initdb on the database's first start: data for the backup to keep.
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO customers (name) VALUES ('Ada'), ('Grace'), ('Edsger');

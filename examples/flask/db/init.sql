-- Run by initdb on the database's first start.
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
INSERT INTO notes (body) VALUES ('hello from init.sql');

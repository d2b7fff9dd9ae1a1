insert into notes (body) values ('hello');

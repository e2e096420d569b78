-- The audit store lives beside Temporal's own databases.
CREATE USER suture WITH PASSWORD 'suture';
CREATE DATABASE suture OWNER suture;

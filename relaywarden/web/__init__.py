"""The abuse team's web page: server-rendered pages and a JSON API over the desk."""

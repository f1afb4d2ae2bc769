"""The abuse team's desk: one service layer under the CLI and the web page."""

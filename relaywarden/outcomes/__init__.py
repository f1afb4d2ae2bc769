"""What happens to a sender's mail after the relay accepted it: delivery outcomes
read from Postfix's log, attributed through the queue id recorded at end of
message, judged at the sender's next MAIL FROM."""

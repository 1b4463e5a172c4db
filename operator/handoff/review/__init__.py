"""What reviewers see and do, shared by the kubectl plugin and the web console."""

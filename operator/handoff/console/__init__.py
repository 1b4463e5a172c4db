"""The reviewers' web console: sign in with a Kubernetes token, review, watch the live feed.

Every read and write is made with the reviewer's own token, so RBAC and the admission policies
judge the person; the console's own identity only checks tokens and reads the audit stream.
"""

# Cluster mode with the app loaded in the master before it forks its workers.
workers 2
threads 2, 2
preload_app!
bind "tcp://127.0.0.1:#{ENV.fetch('PORT')}"
worker_timeout 30

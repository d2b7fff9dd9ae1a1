require_relative "config/environment"

# Recorded so a test can see that the server started after db:prepare.
# Inside the executor, so the connection goes back to the pool: a connection
# held forever stalls every code reload for the pool's checkout timeout.
Rails.application.executor.wrap { BootEvent.create!(kind: "server") }

run Rails.application

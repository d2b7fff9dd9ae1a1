require_relative "config/environment"

# Recorded so a test can see that the server started after db:prepare.
BootEvent.create!(kind: "server")

run Rails.application

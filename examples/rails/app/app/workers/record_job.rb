# Runs in the Sidekiq worker: proves the job went app → Redis → worker → Postgres.
class RecordJob
  include Sidekiq::Worker

  def perform(token)
    JobRun.create!(token: token)
  end
end

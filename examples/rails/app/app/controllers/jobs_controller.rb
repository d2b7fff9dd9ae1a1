# POST /api/jobs enqueues a job that writes a row; GET /api/jobs/TOKEN says
# whether the row is there.
class JobsController < ApplicationController
  def create
    token = SecureRandom.hex(8)
    RecordJob.perform_async(token)
    render json: { token: token }, status: :accepted
  end

  def show
    run = JobRun.find_by(token: params[:token])
    render json: { token: params[:token], done: !run.nil?, processed_at: run&.created_at }
  end
end
